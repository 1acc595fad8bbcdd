"""The columns a watched table's old and new rows are paired on, for both sources: the change
trigger pairs an UPDATE's old and new rows on them, and the WAL source counts every visible
column as changed when one of them changed (the trigger finds no old row then)."""


def pairing_key(key, unique_keys) -> tuple[str, ...] | None:
    """The model's key (`key`) when the table holds it unique; else the first of the table's unique
    keys (its primary key first) that holds the model's key, as a partitioned table's primary key
    must hold its partition columns: (id, ts) for a model keyed on id. None when no unique key
    tells the model's rows apart."""
    wanted = set(key)
    if any(set(unique) <= wanted for unique in unique_keys):
        return tuple(key)
    return next((tuple(unique) for unique in unique_keys if wanted <= set(unique)), None)


def unique_keys_sql(relation: str) -> str:
    """A subquery: the unique keys of the relation whose oid is the SQL expression `relation`, as
    a JSON array text of their column names (in index order), the primary key first. Partial and
    expression indexes tell no rows apart."""
    return f"""(SELECT coalesce(json_agg(ARRAY(
                   SELECT a.attname::text FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, n)
                     JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum ORDER BY k.n)
                 ORDER BY i.indisprimary DESC, i.indexrelid), '[]')::text
          FROM pg_index i
         WHERE i.indrelid = {relation} AND i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL)"""
