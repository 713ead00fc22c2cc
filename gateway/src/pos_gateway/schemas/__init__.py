"""The gateway's answers as pydantic models, one module per area.

Routes build their answers with these models and declare them as their return types, so
FastAPI documents exactly what they send: the document cannot drift from the answers. One
model per resource (`Product`, `Order`, `Money`, ...) wherever it appears, and one list
envelope, `Page[T]`, named `<T>List` in the document.
"""
