"""SunGen bilevel robust sample reweighting: a pure-PyTorch core that knows nothing of Ray."""
