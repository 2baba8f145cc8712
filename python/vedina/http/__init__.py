"""The HTTP layer: responses, middleware, and the RSGI bridge that serves the Robyn app under Granian."""
