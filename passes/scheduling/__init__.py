"""Scheduling passes: event_tensor task grids to sm_task queues and counters."""
