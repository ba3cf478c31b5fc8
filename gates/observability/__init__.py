"""Gate G6 (observability): a real Prometheus, G6's own load and fault, and checks that the numbers agree."""

from gates.observability.gate import ObservabilityGate

__all__ = ["ObservabilityGate"]
