"""Front-end passes: raise imported torch IR into event_tensor task grids."""
