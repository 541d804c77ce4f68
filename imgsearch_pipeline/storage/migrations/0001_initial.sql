-- Products, their images and the analysis of each image. The analysis is keyed by model_version so that a
-- model upgrade writes beside the old rows instead of over them.
CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE products (
    product_id     text PRIMARY KEY,
    name           text,
    brand          text,
    department     text,
    shop_category  text,
    source         text NOT NULL DEFAULT 'feed',   -- feed | key_pattern | api
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE product_images (
    image_id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    s3_key         text NOT NULL UNIQUE,
    product_id     text NOT NULL REFERENCES products (product_id) ON DELETE CASCADE,
    partition_key  text NOT NULL,
    content_hash   text NOT NULL,                  -- sha256 of the object's bytes
    etag           text,
    size_bytes     bigint,
    last_modified  timestamptz,
    status         text NOT NULL DEFAULT 'pending'
                   CHECK (status IN ('pending', 'analysed', 'failed', 'deleted')),
    error          text,
    attempts       integer NOT NULL DEFAULT 0,
    first_seen_at  timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX product_images_partition_status ON product_images (partition_key, status);
CREATE INDEX product_images_product ON product_images (product_id);

CREATE TABLE image_analysis (
    image_id             bigint NOT NULL REFERENCES product_images (image_id) ON DELETE CASCADE,
    model_version        text NOT NULL,
    content_hash         text NOT NULL,            -- the bytes this analysis describes
    category             text,
    category_confidence  real,
    colors               text[] NOT NULL DEFAULT '{}',
    color_coverage       real[] NOT NULL DEFAULT '{}',
    pattern              text,
    has_print            boolean,
    attributes           jsonb NOT NULL DEFAULT '{}',
    description          text NOT NULL DEFAULT '',
    image_embedding      vector,
    text_embedding       vector,
    vocab_version        text NOT NULL,
    analysed_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (image_id, model_version)
);
CREATE INDEX image_analysis_model ON image_analysis (model_version);
