"""Importing whole stores from other tools, read-only on the source, with their versions.

    sources.py          parses SOURCE (`credstash:TABLE`, `ssm:/PREFIX`, `secretsmanager[:PREFIX]`)
    credstash.py        credstash's table: its rows, decrypted as credstash decrypts them
    ssm.py              SSM Parameter Store in chamber's layout, with GetParameterHistory
    secretsmanager.py   Secrets Manager, every version still retrievable
    mapping.py          source names -> (service, user), checked by cloudchain's own rules
    target.py           one conditional write per row that appends the imported versions
    run.py              the plan, the parallel import and the verification

Each source lists its secrets without decrypting anything (a dry run costs no KMS Decrypt);
a version's value is read only when it is about to be written or verified.
"""
