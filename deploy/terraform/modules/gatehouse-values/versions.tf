terraform {
  # Pure expressions, no provider: the tests apply this module offline and load the gateway
  # config it produces with Gatehouse's own config loader.
  required_version = ">= 1.6.0, < 2.0.0"
}
