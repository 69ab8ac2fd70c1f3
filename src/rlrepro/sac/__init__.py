"""The one SAC learner every method trains with: networks, losses, replay storage."""
