"""The node: services of one robot in one nursery (`peerdata.node.node.open_node`)."""
