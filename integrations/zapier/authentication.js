'use strict';

// API-key authentication: the deployment's address (the product is self-hosted, so each
// merchant's Zapier connection names its own) and a merchant API key, sent as
// `Authorization: Bearer …` on every request (see addAuthHeader in index.js).

const { apiUrl } = require('./api');

module.exports = {
  type: 'custom',
  fields: [
    {
      key: 'base_url',
      label: 'Billing portal address',
      type: 'string',
      required: true,
      helpText:
        'The address your billing portal is served at, such as `https://billing.example.com`.',
    },
    {
      key: 'api_key',
      label: 'API key',
      type: 'password',
      required: true,
      helpText: 'A merchant API key (`bp_live_…`), made with the admin command `create-api-key`.',
    },
  ],
  // The connection test: the key's account, which also names the connection.
  test: async (z, bundle) => {
    const response = await z.request({ url: apiUrl(bundle, '/api/v1/me') });
    return response.data;
  },
  connectionLabel: (z, bundle) => bundle.inputData.name || bundle.inputData.account_id,
};
