-- What the PostgreSQL search backend (search/postgres_backend.py) needs: full-text columns and indexes for
-- the lexical list, and indexes for the plan's filters. The k-NN indexes are per model version and per
-- dimension, so they are not here: storage.postgres.ensure_vector_indexes creates them.

-- The description as English lexemes (stemmed, stopwords removed), like OpenSearch's `english` analyzer.
-- Stored: ranking reads it for every filtered row, so it must not be recomputed per query.
ALTER TABLE image_analysis
    ADD COLUMN description_tsv tsvector
    GENERATED ALWAYS AS (to_tsvector('english'::regconfig, description)) STORED;
CREATE INDEX image_analysis_description_tsv ON image_analysis USING gin (description_tsv);

-- Product name (english) and brand (simple: lower-cased words, no stemming, like OpenSearch's `brand.text`).
-- Expression indexes rather than generated columns: products is read with SELECT * by the API, which must
-- not start returning tsvectors. The backend repeats these exact expressions so the planner can use them.
CREATE INDEX products_name_tsv ON products USING gin (to_tsvector('english'::regconfig, coalesce(name, '')));
CREATE INDEX products_brand_tsv ON products USING gin (to_tsvector('simple'::regconfig, coalesce(brand, '')));

-- Filters: exact values of category / pattern (per model version), any-of colours, open attributes
-- (containment), department on products.
CREATE INDEX image_analysis_model_category ON image_analysis (model_version, category);
CREATE INDEX image_analysis_model_pattern ON image_analysis (model_version, pattern);
CREATE INDEX image_analysis_colors ON image_analysis USING gin (colors);
CREATE INDEX image_analysis_attributes ON image_analysis USING gin (attributes jsonb_path_ops);
CREATE INDEX products_department ON products (department);
