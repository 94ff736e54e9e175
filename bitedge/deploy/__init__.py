"""Deploy the runtime and models to boards over SSH (fabric), run them remotely, benchmark fleets."""
