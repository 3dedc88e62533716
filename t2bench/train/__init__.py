"""Training SVF experts: data splits, rewards and the training loop, apart from evaluation."""
