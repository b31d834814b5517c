"""Config: where the YAML lives, recipes, composing, validating and instantiating safely."""
