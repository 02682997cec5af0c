"""The network layer: the only package that touches libp2p or sockets.

`transport` is the interface; `libp2p_transport.open_libp2p_transport` the real implementation
(import it from there: importing this package does not load libp2p).
"""
