DROP TABLE deployment_context;
