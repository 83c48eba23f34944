'use strict';

// The billing portal's Zapier integration: API-key authentication and a REST-hook trigger
// per product event (triggers.js).

const authentication = require('./authentication');
const { addAuthHeader, refusedKey } = require('./api');
const { triggers } = require('./triggers');

module.exports = {
  version: require('./package.json').version,
  platformVersion: require('zapier-platform-core').version,
  authentication,
  beforeRequest: [addAuthHeader],
  afterResponse: [refusedKey],
  triggers,
  searches: {},
  creates: {},
  resources: {},
};
