"""Browser and CLI journeys for the E2E gate: Playwright runner, browser discovery, screenshots."""
