-- The product name and brand as stored tsvectors instead of expression indexes (0003): the lexical list ranks
-- the name and brand of every product with a matching item, and computing their tsvectors per query was a
-- quarter of its time when a query word is in thousands of items (e.g. a category word, at 100k images).
-- Same configurations as before: name english (stemmed), brand simple (lower-cased words, like `brand.text`).
ALTER TABLE products
    ADD COLUMN name_tsv tsvector
        GENERATED ALWAYS AS (to_tsvector('english'::regconfig, coalesce(name, ''))) STORED,
    ADD COLUMN brand_tsv tsvector
        GENERATED ALWAYS AS (to_tsvector('simple'::regconfig, coalesce(brand, ''))) STORED;
DROP INDEX products_name_tsv;
DROP INDEX products_brand_tsv;
CREATE INDEX products_name_tsv ON products USING gin (name_tsv);
CREATE INDEX products_brand_tsv ON products USING gin (brand_tsv);
