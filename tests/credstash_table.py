"""The table credstash's createDdbTable makes (without its waiter and tagging), for the tests and
the import benchmark that write a credstash store with credstash's own putSecret."""

CREDSTASH_TABLE = {
    "TableName": "credential-store",
    "KeySchema": [
        {"AttributeName": "name", "KeyType": "HASH"},
        {"AttributeName": "version", "KeyType": "RANGE"},
    ],
    "AttributeDefinitions": [
        {"AttributeName": "name", "AttributeType": "S"},
        {"AttributeName": "version", "AttributeType": "S"},
    ],
    "BillingMode": "PAY_PER_REQUEST",
}
