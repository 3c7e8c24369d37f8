"""Any3DAvatar: Gaussian rendering core, models, training and inference."""
