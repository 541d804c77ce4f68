"""The asset graph: image_inventory -> image_attributes + image_embeddings -> image_analysis -> search_index."""
