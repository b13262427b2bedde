package georep;

import com.amazonaws.services.dynamodbv2.local.main.ServerRunner;
import com.amazonaws.services.dynamodbv2.local.server.DynamoDBProxyServer;
import java.lang.reflect.Field;
import org.eclipse.jetty.server.Connector;
import org.eclipse.jetty.server.Server;
import org.eclipse.jetty.server.ServerConnector;

/**
 * Starts DynamoDB Local listening on one address only (system property georep.host, default
 * 127.0.0.1) instead of every interface.
 *
 * <p>Why: DynamoDB Local 1.25.1 has no host option; its Jetty server listens on 0.0.0.0, which
 * offers an unauthenticated database to the whole network. This launcher builds the server the
 * way ServerRunner.main does (same command-line arguments), then sets the host of its connectors
 * before starting it. It reads the private field "server" of DynamoDBProxyServer; the fetch
 * module pins the jar by checksum, so the field is known to exist. If it ever does not, the
 * launcher fails loudly rather than listening on every interface.
 *
 * <p>Compiled once by {@code python -m service.backends.fetch} into the DynamoDB Local cache.
 */
public final class LoopbackDynamoDBLocal {
    private LoopbackDynamoDBLocal() {}

    public static void main(String[] args) throws Exception {
        String host = System.getProperty("georep.host", "127.0.0.1");
        DynamoDBProxyServer proxy = ServerRunner.createServerFromCommandLineArgs(args);
        Field field = DynamoDBProxyServer.class.getDeclaredField("server");
        field.setAccessible(true);
        Server server = (Server) field.get(proxy);
        int bound = 0;
        for (Connector connector : server.getConnectors()) {
            if (connector instanceof ServerConnector) {
                ((ServerConnector) connector).setHost(host);
                bound++;
            }
        }
        if (bound == 0) {
            throw new IllegalStateException("no network connector found to bind to " + host);
        }
        proxy.start();
        System.out.println("georep: DynamoDB Local listening on " + host);
    }
}
