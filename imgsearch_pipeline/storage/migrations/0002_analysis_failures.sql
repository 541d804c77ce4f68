-- The dead-letter record: why an image's bytes could not be analysed by a model version, and how often.
-- Permanent failures are not retried by ordinary runs (only by a replay); retryable ones are.
CREATE TABLE analysis_failures (
    image_id         bigint NOT NULL REFERENCES product_images (image_id) ON DELETE CASCADE,
    model_version    text NOT NULL,
    content_hash     text NOT NULL,
    error            text NOT NULL,
    retryable        boolean NOT NULL,
    attempts         integer NOT NULL DEFAULT 1,
    first_failed_at  timestamptz NOT NULL DEFAULT now(),
    last_failed_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (image_id, model_version)
);
