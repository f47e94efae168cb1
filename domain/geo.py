"""Great-circle distance between WGS84 points."""

from __future__ import annotations

import math

from domain.model import GeoPoint

# IUGG mean earth radius; a sphere is accurate to ~0.5% which is plenty for "within 5 km of a store".
EARTH_RADIUS_KM = 6371.0088


def distance_km(a: GeoPoint, b: GeoPoint) -> float:
    """Haversine distance in kilometres."""
    lat1 = math.radians(a.latitude)
    lat2 = math.radians(b.latitude)
    dlat = lat2 - lat1
    dlon = math.radians(b.longitude - a.longitude)
    h = math.sin(dlat / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin(dlon / 2) ** 2
    # Rounding can push h a hair above 1 for antipodal points; asin would then raise.
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))
