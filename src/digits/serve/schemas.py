"""The API's response shapes, as pydantic models: they are what /docs shows."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class DigitReading(BaseModel):
    """One picture's prediction; label is null when it is not a digit, probabilities too when
    it is blank."""

    label: int | None = Field(description="the most probable digit, or null when the picture is not a digit")
    digit_found: bool
    probabilities: list[float] | None = Field(description="calibrated P(digit = 0..9), summing to 1; null "
                                              "for a blank picture")
    verdict: Literal["answered", "unsure", "not a digit"] = Field(
        description="answered: label is the answer; unsure: the calibrated confidence is under the run's "
                    "threshold, candidates names the two likeliest digits; not a digit: blank, a letter, "
                    "a scribble, noise")
    candidates: list[int] = Field(description="the digits worth naming, likeliest first: one when answered, "
                                  "two when unsure, none when not a digit")
    confidence: float | None = Field(description="calibrated probability of the likeliest digit")
    message: str | None = Field(default=None, description="why there is no label")
    image: list[list[int]] | None = Field(default=None, description="the 28x28 image the model saw "
                                          "(with ?include_image=true)")


class Prediction(DigitReading):
    """The answer to a request holding one picture."""

    model_version: str


class BatchPrediction(BaseModel):
    """The answer to a request holding several pictures, in their order."""

    model_version: str
    predictions: list[DigitReading]


class Health(BaseModel):
    status: str
    model_version: str
    runtime: str


class MemberOut(BaseModel):
    """One model of the served run: for an ensemble, one member."""

    name: str = Field(description="its folder in the run directory ('members/01'; '.' for one model)")
    architecture: str
    args: dict[str, Any]
    parameters: int
    accuracy: float | None = Field(description="accuracy it recorded on held-out digits")
    accuracy_source: str | None = Field(description="'test' or 'validation'")
    precision: str = Field(description="the number format it predicts in: fp32, bf16 or fp16")


class ModelCardOut(BaseModel):
    kind: Literal["single", "ensemble"] = Field(description="one model, or an ensemble averaging its members")
    architecture: str = Field(description="the members' architecture ('mixed' when they differ)")
    args: dict[str, Any]
    parameters: int = Field(description="of every member together")
    version: str
    accuracy: float | None = Field(description="accuracy measured on held-out digits")
    accuracy_source: str | None = Field(description="'test' or 'validation'; for an ensemble without "
                                        "a test score, \"members' validation\": their mean")
    tta: bool = Field(description="whether predictions average five one-pixel shifts of each picture")
    members: list[MemberOut]
    runtime: str
    calibration: str = Field(description="how the probabilities are calibrated, and when an answer is unsure")
    limits: dict[str, int]


class ErrorOut(BaseModel):
    detail: str = Field(description="what is wrong with the request, and how to fix it")


PREDICT_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "application/json": {"schema": {"oneOf": [
            {"type": "object", "required": ["pixels"], "properties": {"pixels": {
                "description": "28 rows of 28 numbers, or a flat list of 784, each 0-255",
                "type": "array", "items": {}}}},
            {"type": "object", "required": ["images"], "properties": {"images": {
                "description": "a batch: a list of pixel arrays as above", "type": "array",
                "items": {"type": "array", "items": {}}}}}]}},
        "multipart/form-data": {"schema": {"type": "object", "properties": {"file": {
            "type": "array", "items": {"type": "string", "format": "binary"},
            "description": "one or more PNG/JPEG photos or scans of a digit"}}}},
        "image/png": {"schema": {"type": "string", "format": "binary"}},
        "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
    },
}
