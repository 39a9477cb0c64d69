"""Lightning training for segsvc: LightningModule, DataModules, callbacks and the `segsvc` CLI."""
