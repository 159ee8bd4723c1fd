"""Everything between a translator and the network: pooled HTTP, upstream auth, stream framing."""
