"""Image partitions are S3 prefixes ("catalog/women/dress/"), added by the sensor as they appear."""

from dagster import DynamicPartitionsDefinition

image_prefixes = DynamicPartitionsDefinition(name="image_prefixes")
