"""The model: what hatchway keeps and decides, free of storage, transport and process."""
