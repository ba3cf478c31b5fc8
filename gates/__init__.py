"""One module per gate; adding a gate means adding its module and one line to ALL_GATES."""

from gates.bootstrap import BootstrapGate
from gates.chaos import ChaosGate
from gates.coverage import CoverageGate
from gates.docs import DocsGate
from gates.e2e import E2EGate
from gates.identity import IdentityGate
from gates.load import ErrorRateGate, LatencyGate
from gates.observability import ObservabilityGate
from gates.playbooks import PlaybookGate
from gates.security import SecurityGate
from gates.soak import SoakGate

ALL_GATES = (
    IdentityGate(),
    CoverageGate(),
    LatencyGate(),
    ErrorRateGate(),
    ChaosGate(),
    SecurityGate(),
    ObservabilityGate(),
    BootstrapGate(),
    DocsGate(),
    PlaybookGate(),
    E2EGate(),
    SoakGate(),
)
