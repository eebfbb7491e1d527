"""pdx-client: the requester-side SDK of the pdx platform (job keys in `pdx_client.jobkeys`)."""
