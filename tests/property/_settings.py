"""Bounded hypothesis settings shared by the property tests: the whole folder stays well under a minute."""

from __future__ import annotations

from hypothesis import HealthCheck, settings

# the repository's autouse fixtures (network block, cache folder) are function-scoped and harmless to share between
# examples; deadline=None because the 2-core CI machine is shared and a slow example is not a failure
BOUNDED = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                           HealthCheck.too_slow])
FEW = settings(BOUNDED, max_examples=40)
MANY = settings(BOUNDED, max_examples=200)
