package main

import (
	"errors"

	"github.com/nats-io/nats.go"
	"github.com/spf13/pflag"

	"github.com/mles/mles/server"
)

// natsFlags are the cluster's flags (SPEC 6) beyond server.Options' own.
type natsFlags struct {
	creds, ca, cert, key string
}

func (n *natsFlags) define(fs *pflag.FlagSet, o *server.Options) {
	fs.StringSliceVar(&o.NATS, "nats", nil, "join a NATS cluster (with JetStream): nats://host:port, comma-separated or repeated; channels span every server on it, their history and order are a JetStream stream's (SPEC 6)")
	fs.StringVar(&o.NATSPrefix, "nats-prefix", server.DefaultNATSPrefix, "with --nats: the subjects' prefix; upper-cased, the stream's name")
	fs.IntVar(&o.NATSReplicas, "nats-replicas", 1, "with --nats: the stream's replicas (3 in a cluster of 3 or more NATS servers)")
	fs.StringVar(&n.creds, "nats-creds", "", "with --nats: a NATS credentials file (JWT and NKey seed)")
	fs.StringVar(&n.ca, "nats-ca", "", "with --nats: PEM file of the CA certificates that tls:// NATS servers are checked against")
	fs.StringVar(&n.cert, "nats-cert", "", "with --nats: PEM client certificate for NATS (with --nats-key)")
	fs.StringVar(&n.key, "nats-key", "", "with --nats: PEM private key of --nats-cert")
}

func (n *natsFlags) apply(o *server.Options) error {
	if len(o.NATS) == 0 {
		if n.creds != "" || n.ca != "" || n.cert != "" || n.key != "" {
			return errors.New("--nats-creds, --nats-ca, --nats-cert and --nats-key need --nats")
		}
		return nil
	}
	if n.creds != "" {
		o.NATSOptions = append(o.NATSOptions, nats.UserCredentials(n.creds))
	}
	if n.ca != "" {
		o.NATSOptions = append(o.NATSOptions, nats.RootCAs(n.ca))
	}
	if (n.cert == "") != (n.key == "") {
		return errors.New("--nats-cert and --nats-key go together")
	}
	if n.cert != "" {
		o.NATSOptions = append(o.NATSOptions, nats.ClientCert(n.cert, n.key))
	}
	return nil
}
