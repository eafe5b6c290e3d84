"""NoisyCLIP fine-tuning: step sampling, training targets, the trainer and its held-out evaluation."""
