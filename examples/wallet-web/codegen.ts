// Types and typed documents from the checked-in schema and the app's shared
// operation documents (../../documents), with the README's scalar mapping,
// and the trusted-documents manifest the server runs with
// (src/gql/persisted-documents.json: TRUSTED_DOCUMENTS=...).
import type { CodegenConfig } from '@graphql-codegen/cli';
import { addTypenameSelectionDocumentTransform } from '@graphql-codegen/client-preset';

const config: CodegenConfig = {
  schema: '../../schema.graphql',
  // The app's own documents; service.graphql and load.graphql are for servers.
  documents: ['../../documents/wallet.graphql', '../../documents/payments.graphql'],
  generates: {
    'src/gql/': {
      preset: 'client',
      presetConfig: { persistedDocuments: true, fragmentMasking: false },
      // graphcache normalises by __typename: the stored documents ask for it.
      documentTransforms: [addTypenameSelectionDocumentTransform],
      config: {
        strictScalars: true,
        enumsAsTypes: true,
        scalars: {
          Decimal: { input: 'string', output: 'string' },
          UUID: { input: 'string', output: 'string' },
          DateTime: { input: 'string', output: 'string' },
        },
      },
    },
  },
};

export default config;
