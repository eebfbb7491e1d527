"""Request and response models of the catalogue (docs/compliance.md GRD-02 field names)."""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from exchange.levels import Level, OpenAttribute, ProcessingDegree, ShareAttribute
from exchange.timestamps import Timestamp

# Tab and newline are fine in a description; other control characters (NUL first) are not.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class ImpactObject(StrEnum):
    """GB/T 43697-2024 §6: whose interests harm to the data would affect."""

    NATIONAL_SECURITY = "national-security"
    ECONOMIC_OPERATION = "economic-operation"
    SOCIAL_ORDER = "social-order"
    PUBLIC_INTEREST = "public-interest"
    ORGANISATION_RIGHTS = "organisation-rights"
    INDIVIDUAL_RIGHTS = "individual-rights"


class ImpactDegree(StrEnum):
    """GB/T 43697-2024 §6: 特别严重 / 严重 / 一般 / 无或轻微."""

    ESPECIALLY_SERIOUS = "especially-serious"
    SERIOUS = "serious"
    GENERAL = "general"
    MINOR = "minor"


class DatasetCreate(BaseModel):
    """The `metadata` part of a registration."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    classification_path: list[str] = Field(
        min_length=2, max_length=8, description="domain → … → business attribute"
    )
    level: Level
    impact_object: ImpactObject
    impact_degree: ImpactDegree
    processing_degree: ProcessingDegree = ProcessingDegree.RAW
    source_agency: str = Field(min_length=1, max_length=200)
    source_system: str | None = Field(default=None, max_length=200)
    accountable_department: str = Field(min_length=1, max_length=200)
    pi: bool
    sensitive_pi: bool
    important_data_catalogue: bool = False
    share_attribute: ShareAttribute
    open_attribute: OpenAttribute
    next_review_at: datetime | None = None

    @model_validator(mode="after")
    def _consistent(self) -> DatasetCreate:
        texts = [
            self.name,
            self.description,
            self.source_agency,
            self.source_system,
            self.accountable_department,
            *self.classification_path,
        ]
        if any(t is not None and _CONTROL.search(t) for t in texts):
            raise ValueError("text fields may not contain control characters")
        if any(not part or len(part) > 100 for part in self.classification_path):
            raise ValueError("classification_path entries must be 1-100 characters")
        if self.sensitive_pi and not self.pi:
            raise ValueError("sensitive_pi implies pi")
        high = self.level in (Level.IMPORTANT, Level.CORE)
        if self.important_data_catalogue and not high:
            raise ValueError("data on the important-data catalogue is graded important or core")
        if high and self.open_attribute == OpenAttribute.OPEN:
            # docs/compliance.md GRD-05: core and important data are never published raw.
            raise ValueError("important and core data cannot be open (无条件开放)")
        if self.next_review_at is not None and self.next_review_at.tzinfo is None:
            raise ValueError("next_review_at needs a timezone")
        return self


class CategoryHitPublic(BaseModel):
    """Values of one sensitive category found in a field."""

    hits: int = Field(description="values of this category (validated: check digits, Luhn)")
    ratio: float = Field(description="hits / non-empty values")
    embedded: int = Field(description="of the hits, how many were inside longer free text")
    counted: bool = Field(description="whether this category set the field's level")


class FieldPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)  # read from a DatasetField

    position: int
    name: str
    level: Level
    pi: bool
    sensitive_pi: bool
    non_empty: int
    detections: dict[str, CategoryHitPublic]
    reason: str | None


class DatasetPublic(BaseModel):
    """What the catalogue shows about a dataset: metadata, grading and content facts."""

    id: str
    owner_org: str
    name: str
    description: str | None
    classification_path: list[str]
    level: Level
    suggested_level: Level
    most_sensitive_field: str | None
    impact_object: str
    impact_degree: str
    processing_degree: str
    source_agency: str
    source_system: str | None
    accountable_department: str
    pi: bool
    sensitive_pi: bool
    important_data_catalogue: bool
    share_attribute: str
    open_attribute: str
    graded_at: Timestamp
    graded_by: str
    next_review_at: Timestamp
    custody: str
    size_bytes: int
    rows: int
    digests: dict[str, str] | None = Field(
        description="`sha256:<hex>` and `sm3:<hex>` of the plaintext; owner, auditors and "
        "security only"
    )
    ledger_index: int | None = Field(
        default=None, description="On registration: the ledger entry that records it"
    )
    registered_at: Timestamp
    registered_by: str
    fields: list[FieldPublic]


class DatasetSummary(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    owner_org: str
    name: str
    level: Level
    open_attribute: str
    classification_path: list[str]
    rows: int
    registered_at: Timestamp


class PreviewPublic(BaseModel):
    """Synthetic rows: the dataset's schema and value shapes, no real value."""

    dataset_id: str
    synthetic: bool = True
    columns: list[str]
    rows: list[dict[str, Any]]
