"""audiossl: self-supervised audio pre-training and fine-tuning recipes."""
