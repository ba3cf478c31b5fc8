"""Fault injection for the chaos gate (G4): proxy, process, disk and memory faults, probes, ledger."""
