"""One module per gate; adding a gate means adding its module and one line to ALL_GATES."""

from gates.bootstrap import BootstrapGate
from gates.coverage import CoverageGate
from gates.identity import IdentityGate

ALL_GATES = (IdentityGate(), BootstrapGate(), CoverageGate())
