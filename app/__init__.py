"""OPCoD Studio's web side: the server, the database that is the contract with workers, and the workers.

Nothing here trains a model except ``app.worker`` (through ``opcod_core``); the rest only reads and
writes the database, so the web process never imports torch.
"""
