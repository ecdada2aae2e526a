"""RPC: errors, the caller's and the callee's managers."""
