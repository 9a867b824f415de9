"""MIH services over IP (RFC 5677): transport, MoS discovery (RFC 5678, RFC 5679), PSK-secured channels."""
