"""GLoRIA (Huang et al., ICCV 2021; official code marshuang80/gloria) as vlpbench components."""

__version__ = "0.1.0"
