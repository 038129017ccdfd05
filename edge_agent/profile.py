"""The default collection profile: which signals are kept, and how thinly.

Chosen for a road-condition service: speed and manoeuvres, braking and stability
control, wipers and lamps (weather), lane-marking quality, headway and the camera's
own health. At full bus load this keeps a few kB per minute. The signals the collector's
road aggregates read are named by protocol.contracts.
"""

from __future__ import annotations

from edge_agent.thin import SamplePolicy
from protocol.contracts import (
    CAMERA_FAILSAFE_FLAG,
    LANE_QUALITY_LEFT,
    LANE_QUALITY_RIGHT,
    WIPER_HIGH_SW,
    WIPER_INT_SW,
    WIPER_LOW_SW,
)

VEHICLE_SPEED = "vehicle.speed_kmh"

_S = 1000  # ms per second, for readability below

DEFAULT_PROFILE: tuple[SamplePolicy, ...] = (
    # Derived from the four wheel speeds (or the camera's echo of the car's speed).
    SamplePolicy(
        VEHICLE_SPEED, deadband=2.0, min_interval_ms=500, max_interval_ms=10 * _S, unit="km/h"
    ),
    # Vehicle CAN
    SamplePolicy(
        "SAS11.SAS_Angle", deadband=10.0, min_interval_ms=500, max_interval_ms=30 * _S, unit="deg"
    ),
    SamplePolicy(
        "ESP12.LAT_ACCEL", deadband=1.0, min_interval_ms=500, max_interval_ms=30 * _S, unit="m/s2"
    ),
    SamplePolicy(
        "ESP12.LONG_ACCEL", deadband=1.0, min_interval_ms=500, max_interval_ms=30 * _S, unit="m/s2"
    ),
    SamplePolicy(
        "ESP12.YAW_RATE", deadband=5.0, min_interval_ms=500, max_interval_ms=30 * _S, unit="deg/s"
    ),
    SamplePolicy(
        "ESP12.CYL_PRES", deadband=10.0, min_interval_ms=500, max_interval_ms=30 * _S, unit="bar"
    ),
    SamplePolicy("TCS11.ABS_ACT", min_interval_ms=100, max_interval_ms=60 * _S),
    SamplePolicy("TCS11.ESP_CTL", min_interval_ms=100, max_interval_ms=60 * _S),
    SamplePolicy("TCS11.TCS_CTL", min_interval_ms=100, max_interval_ms=60 * _S),
    SamplePolicy(WIPER_INT_SW, min_interval_ms=500, max_interval_ms=60 * _S),
    SamplePolicy(WIPER_LOW_SW, min_interval_ms=500, max_interval_ms=60 * _S),
    SamplePolicy(WIPER_HIGH_SW, min_interval_ms=500, max_interval_ms=60 * _S),
    SamplePolicy("CGW1.CF_Gway_HazardSw", min_interval_ms=500, max_interval_ms=60 * _S),
    SamplePolicy("CGW1.CF_Gway_HeadLampLow", min_interval_ms=500, max_interval_ms=60 * _S),
    SamplePolicy("CGW1.CF_Gway_Frt_Fog_Act", min_interval_ms=500, max_interval_ms=60 * _S),
    SamplePolicy(
        "FATC11.CR_Fatc_OutTemp",
        deadband=1.0,
        min_interval_ms=10 * _S,
        max_interval_ms=300 * _S,
        unit="degC",
    ),
    # Camera
    SamplePolicy(
        "ME_Display_Warnings.headway_measurement",
        deadband=0.5,
        min_interval_ms=1 * _S,
        max_interval_ms=60 * _S,
        unit="s",
    ),
    SamplePolicy(
        "ME_Display_Warnings.headway_warning_level", min_interval_ms=500, max_interval_ms=60 * _S
    ),
    SamplePolicy(
        "ME_Display_Warnings.tsr_warning_level", min_interval_ms=500, max_interval_ms=60 * _S
    ),
    SamplePolicy(CAMERA_FAILSAFE_FLAG, min_interval_ms=500, max_interval_ms=60 * _S),
    SamplePolicy("ME_Display_Warnings.tamper_alert", min_interval_ms=500, max_interval_ms=60 * _S),
    SamplePolicy(
        "ME_Display_Warnings.time_indicator", min_interval_ms=5 * _S, max_interval_ms=300 * _S
    ),
    SamplePolicy(
        "ME_Obstacle_Status.num_obstacles", min_interval_ms=1 * _S, max_interval_ms=60 * _S
    ),
    SamplePolicy("ME_Obstacle_Status.failsafe", min_interval_ms=500, max_interval_ms=60 * _S),
    SamplePolicy(
        "ME_Aftermarket_Lane.lane_type_left", min_interval_ms=1 * _S, max_interval_ms=60 * _S
    ),
    SamplePolicy(
        "ME_Aftermarket_Lane.lane_type_right", min_interval_ms=1 * _S, max_interval_ms=60 * _S
    ),
    SamplePolicy(LANE_QUALITY_LEFT, min_interval_ms=1 * _S, max_interval_ms=60 * _S),
    SamplePolicy(LANE_QUALITY_RIGHT, min_interval_ms=1 * _S, max_interval_ms=60 * _S),
    SamplePolicy("ME_TSR_Vision_Only.sign_type_d1", min_interval_ms=500, max_interval_ms=60 * _S),
)
