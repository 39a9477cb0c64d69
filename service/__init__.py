"""BentoML serving for segsvc (`bentoml serve` from the repository root, see bentofile.yaml)."""
