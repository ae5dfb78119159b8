"""Where students live. ``local``: both in the trainer's process. ``ray``: each in a Ray actor with
the resources the config asks for, the trainer (the worker process) coordinating through proxies
that have the student runtime's methods, so the trainer, observer and controls do not change."""
