"""Templates for every rendered document; artifacts/ holds run outputs (git-ignored)."""
