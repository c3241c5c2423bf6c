"""Federated wiring: the TFF process, its aggregators and execution contexts.

Importing this package installs the cleanup of TFF's worker subprocess
(`contexts.install_cleanup_handlers`): TFF 0.87 would otherwise leave it
running, and print an error from its own finaliser, when Python exits.
"""

from fedmeta_tf.tff_process import contexts as _contexts

_contexts.install_cleanup_handlers()
