"""Ids of the one story the entra-signin and graph-activity fixtures tell together (Alice's
Azure CLI sign-in, its Graph calls, the reporting app and a managed identity): one place, so
the two formats' tests cannot drift apart."""

TENANT = "5f0c7a2e-3b1d-4c6f-9a8e-2d4b6c8e0a1f"
ALICE = "a9e4c1d2-7b3f-4e8a-9c5d-1f2e3a4b5c6d"
AZURE_CLI = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"
GRAPH = "00000003-0000-0000-c000-000000000000"
SESSION = "3d2c1b0a-9f8e-4d7c-b6a5-948372615041"
DEVICE = "7e6d5c4b-3a29-4180-9f8e-7d6c5b4a3928"
REPORTING_APP = "3f6a9c2e-8d41-4b7a-a5e3-6c1d9b2f4e80"
REPORTING_SP = "e2d4f6a8-0b1c-4d3e-8f5a-7b9c1d3e5f70"
OURS = {"entra-signin", "graph-activity"}
