"""Pure offer evaluation: dataclasses in, dataclasses out; no gRPC, Redis or SQL imports."""
