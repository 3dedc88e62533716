"""Tables, plots and provenance for everything written under results/."""
