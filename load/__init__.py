"""Load generation for gates G2/G3: Locust profiles P1-P5, open-model scheduling, exact statistics."""
