"""The use cases behind the RPCs: they take ports (usecases.ports) and run the pure domain; never protobuf,
never a concrete store."""
