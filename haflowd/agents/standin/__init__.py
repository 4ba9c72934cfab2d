"""The stand-in agent script shipped into the default agent image."""
